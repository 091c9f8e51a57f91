"""The plugin system: hookspecs, the table of plugin kinds, registries, the manager, and the
executor contract. Imports train and the layers below it; the built-in plugins are loaded by name."""
