"""The checks, by concern: ``values`` (outputs and the weight after the call), ``gradients``,
``errors`` (invalid inputs), ``strict`` (this spec's decisions where torch is unspecified),
``extensions`` (behaviour beyond torch), ``quantized`` (torch's row-wise quantized ops), and ``rows`` (the
rows of the report, each citing the docs/spec.md rule IDs it checks).  Import the submodules themselves: this
package imports nothing, so importing one check module does not import the others."""
