"""Storage backends: untrusted key-value stores with revisions (they only ever
see barrier ciphertext). Every backend passes tests/conformance/."""
