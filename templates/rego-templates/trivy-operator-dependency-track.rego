# trivy-operator SbomReport -> the CycloneDX document of the report, for Dependency-Track.
# Same output as Postee's postee.trivyoperator.dependencytrack; written for this project.
package postee.trivyoperator.dependencytrack

title := sprintf("%s:%s", [input.report.artifact.repository, input.report.artifact.tag])

result := input.report.components
