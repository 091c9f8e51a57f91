from knowundo_bench.cli import app

app(prog_name="knowundo-bench")
