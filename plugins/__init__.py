"""The built-in plugins. Each subpackage is its own entry point in ``core.plugins``,
registered exactly as a third-party plugin would be; its ``__init__`` only names factories
(``module:attr`` strings), so listing plugins imports nothing heavy."""
