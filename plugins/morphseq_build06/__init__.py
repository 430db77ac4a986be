"""Build06: attach a morphological embedding to every row of df02, giving df03."""
