"""The wire vocabulary every layer shares: errors, the request schema, result types, runner item types.
Imports nothing of this project's other packages (a test holds it to that)."""
