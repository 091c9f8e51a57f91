"""The benchmark's data model: QA pairs by scope and split, reading domain files, and prompt
encoding (formats, tokenisation, padding). Imports only core."""
