"""Result records: one JSON file per unit of work, the typed model they follow, how they
are written (atomically) and read back (through an SQLite index).

* :mod:`.schema` — :class:`ResultRecord`, the typed record (with ``schema_version``);
* :mod:`.files` — writing and reading one record file (non-finite numbers as strings);
* :mod:`.atomic` — crash-safe writes of files and folders;
* :mod:`.index` — the SQLite index of every results directory.
"""
