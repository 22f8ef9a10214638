"""The live wiring: the batch processor, its partition store, and the one module that adapts them to Faust."""
