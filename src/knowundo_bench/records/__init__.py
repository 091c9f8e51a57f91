"""Result records: the typed schema, files written atomically, the SQLite index, where things
live in a results directory and what a memory reading measures. Imports only core; never torch."""
