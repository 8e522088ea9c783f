"""``python -m services.demo``: see services/demo/generator.py."""

from services.demo.generator import main

main()
