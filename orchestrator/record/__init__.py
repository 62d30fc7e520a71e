"""What a build tells: events, their models, secret masking, run folders, the manifest (a fold
over the events) and the history of runs."""
