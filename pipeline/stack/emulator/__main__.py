"""`python -m pipeline.stack.emulator`: start moto server with the stand-ins."""

from . import main

main()
