// The Node drain shim (part C of issue #9) replaces this placeholder.
