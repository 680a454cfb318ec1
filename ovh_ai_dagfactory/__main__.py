"""`python -m ovh_ai_dagfactory ...`: the same command line as the `ovh-ai-dagfactory` script."""

import sys

from ovh_ai_dagfactory.cli.main import main

sys.exit(main())
