"""A run: its settings (declared once, resolved against a model, recorded), the conformal intervals
it applies, the methods that need no model, and the restoration of an image plane by plane, with its
cost said before it runs."""
