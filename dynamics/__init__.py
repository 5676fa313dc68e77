"""Action-conditioned object dynamics trained on the memory's tracks.

Not built yet: see the project's issue on dynamics.
"""
