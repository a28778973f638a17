"""The engines: what runs tasks in the engine process. ``base.py`` has the interface the engine
process drives and ``build_engine``; ``pools.py`` the standard library's and pebble's pools;
``htex.py`` and ``htex_mpi.py`` Parsl's HighThroughputExecutor and MPIExecutor; ``chunks.py``
how tasks are handed to workers, one by one or in chunks, and their outcomes reported."""
