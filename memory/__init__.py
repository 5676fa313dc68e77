"""The persistent scene memory: static scaffold, object models and tracks over time.

Not built yet: see the project's issue on the persistent scene memory.
"""
