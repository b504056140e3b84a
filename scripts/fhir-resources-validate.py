# Validates FHIR R4 resources, one JSON document per line on standard input, with the R4
# models of the `fhir.resources` package (run with the virtual environment scripts/test.sh
# makes at target/fhir-validator). Prints each resource it refuses and why; exits 1 if
# any was refused.
import json
import sys

from fhir.resources import construct_fhir_element

failed = 0
for line in sys.stdin:
    resource = json.loads(line)
    try:
        construct_fhir_element(resource["resourceType"], resource)
    except Exception as error:
        failed += 1
        print(resource.get("resourceType"), resource.get("id"), error)
sys.exit(1 if failed else 0)
