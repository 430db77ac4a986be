"""Model-based test of the operator's loop (issue 16); ``python -m tests.model`` runs the long profile."""
