"""Built-in plugins: one file per method, localizer, data source or model source."""
