# `postee.vuls.cyclonedx`: the CycloneDX template under its correct spelling (Postee only has
# `postee.vuls.cyclondx`).
package postee.vuls.cyclonedx

import data.postee.vuls.cyclondx

title := cyclondx.title

result := cyclondx.result
