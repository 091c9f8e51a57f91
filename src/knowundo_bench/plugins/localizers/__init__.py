"""Localizers: which parameters an unlearning method may update (MemFlex and variants)."""
