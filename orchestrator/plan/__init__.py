"""From a pipeline file to a plan: loading, `foreach`, every step instance planned through its
kind, the graph, the compiled plan and the saved plan."""
