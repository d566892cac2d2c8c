"""Studies made with the library, not part of it: the memory benchmark (`flowrl bench
memory`, its tables in memory_benchmark.yaml) and the probes that show why a trained T-Maze
or MiniGrid-Memory agent succeeds or fails. The CLI, benchmarks and tests use them; nothing
below this package imports it."""
