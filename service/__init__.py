"""relbank: a relationship bank balance per customer."""
