"""The gRPC transport of the federation server."""
