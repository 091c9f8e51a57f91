"""Built-in plugins, by kind; each file is named after the name it registers.

* ``methods/`` — unlearning methods (``methods[].name`` in a spec);
* ``localizers/`` — which parameters a method may update (``methods[].localizer``);
* ``data/`` — benchmark QA pairs (``data.source``); ``data/synthetic_authors.py`` is the
  generator behind ``synthetic`` and registers nothing itself;
* ``ood/`` — out-of-distribution retain passages (``ood_retain.source``);
* ``models/`` — base and vanilla models (``model.source``).

They are ordinary plugins: they import only from :mod:`knowundo_bench.api`, and the plugin
manager registers them from its ``BUILTIN_PLUGINS`` tuple.
"""
