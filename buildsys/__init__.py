"""build.py's parts (standard library only: build.py runs before any virtual environment exists)."""
