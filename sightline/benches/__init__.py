"""`sightline bench …`: benchmarks that print their figures (their numeric arguments use
``sightline.argtypes``)."""
