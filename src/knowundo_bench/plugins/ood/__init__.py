"""Out-of-distribution retain data sources (``ood_retain.source``)."""
