"""The conformance suite's collection point: ``pytest --pyargs xembed_conformance`` collects this file, and the
plugin (:mod:`xembed_conformance.plugin`) turns it into one item per check id.  Nothing to run by hand here."""
