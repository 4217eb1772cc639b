"""The search: prompts, architects, the orchestrator, the model repository, the ledger, the CLI."""
