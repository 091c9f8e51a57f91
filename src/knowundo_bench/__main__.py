from knowundo_bench.cli import app

app()
