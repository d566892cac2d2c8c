"""Studies made with the library, not part of it: the memory benchmark's probes, which show
why a trained T-Maze or MiniGrid-Memory agent succeeds or fails. Benchmarks and tests use
them; nothing below this package imports it."""
