"""Built-in plugins, one folder per plugin kind (:data:`knowundo_bench.plugin.kinds.KINDS`),
each file named after what it registers. They import only from :mod:`knowundo_bench.api`.

* ``methods/`` — unlearning methods (``methods[].name`` in a spec);
* ``localizers/`` — which parameters a method may update (``methods[].localizer``);
* ``guards/`` — request filters in front of the model (``methods[].guard``);
* ``data/`` — benchmark QA pairs (``data.source``); ``data/synthetic_authors.py`` and
  ``data/synthetic_books.py`` are the generators behind ``synthetic`` and register nothing;
* ``ood/`` — out-of-distribution retain passages (``ood_retain.source``);
* ``models/`` — base and vanilla models (``model.source``);
* ``executors/`` — where a suite's units run (``execution.executor``);
* ``generators/`` — text generators of ``knowundo-bench build`` (``generator.name``).

The plugin manager registers them by module name from ``KINDS``, as it registers
third-party plugins from their entry points.
"""
