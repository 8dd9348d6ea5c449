"""``python -m pgfactory_kit.cli``: the same as the ``pgfactory-kit`` command."""
import sys

from .main import main

sys.exit(main())
