"""The runtime pod's entrypoint: locate the model, render the vLLM command line, run the server."""
