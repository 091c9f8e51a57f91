"""Unlearning methods: one file per method, holding only what makes it different."""
