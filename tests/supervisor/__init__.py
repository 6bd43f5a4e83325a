"""Black-box tests of the supervisor: the harness, its helper children and the tests."""
