"""CoLA fine-tuning recipe: the logic behind `run_cola.py`, one concern per module."""
