"""Speed and memory benchmarks: figures against plain QEMU and docker run, not timed tests."""
