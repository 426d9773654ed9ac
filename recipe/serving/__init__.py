"""A trained model at work: predict, the GLUE submission file, the Hub upload."""
