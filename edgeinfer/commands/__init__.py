"""CLI verbs: one module each, with add_parser(subparsers)."""
