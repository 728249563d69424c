"""`python -m dualflow ...` → :func:`dualflow.cli.main`."""

from dualflow.cli import main

if __name__ == "__main__":
    main()
