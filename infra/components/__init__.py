"""One ComponentResource per concern; each turns the specs of ``infra.specs`` into resources."""
