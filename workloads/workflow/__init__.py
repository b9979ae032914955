"""The book's workflow: grid search (fan-out), selection (fan-in), export, promotion, the local pipeline."""
