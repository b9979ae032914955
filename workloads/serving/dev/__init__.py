"""The development server: a stand-in for TF Serving's REST and gRPC APIs, run locally and in the tests."""
