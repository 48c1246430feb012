"""Runnable services over the parakeet_stream engine: the CLI, the dalston worker, the LiveKit captions agent."""
