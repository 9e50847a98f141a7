//! Security and bad-input tests: secrets, TLS, redirects, fuzzed responses.
