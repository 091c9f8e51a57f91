"""Loggers (``logging`` in a spec, ``--log-to``): ``trackio``, ``wandb`` and ``mlflow``, each
an optional extra (``pip install 'knowundo-bench[trackio]'``) imported only when named."""
