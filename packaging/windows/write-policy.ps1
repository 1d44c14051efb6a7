# Writes the tray-agent machine policy (TOML) from the MSI's public properties.
# Run by the installer as SYSTEM: write-policy.ps1 -Path <file> -Server <url> -Dialect <org|dashboard>
#   [-Org <id>] [-Company <id>] [-Lock 0|1]
param(
  [Parameter(Mandatory = $true)][string]$Path,
  [Parameter(Mandatory = $true)][string]$Server,
  [string]$Dialect = "dashboard",
  [string]$Org = "",
  [string]$Company = "",
  [string]$Lock = "0"
)
$ErrorActionPreference = "Stop"

function Quote([string]$value) {
  # A TOML basic string: escape backslashes and quotes, refuse control characters.
  if ($value -match '[\x00-\x1f\x7f]') { throw "control characters are not allowed: $value" }
  return '"' + $value.Replace('\', '\\').Replace('"', '\"') + '"'
}

if ($Server -notmatch '^https?://') { throw "SERVER_URL must be an http(s) URL, not '$Server'" }
if ($Dialect -notin @("org", "dashboard")) { throw "DIALECT must be org or dashboard, not '$Dialect'" }

$keys = @("connection.server", "connection.dialect")
$lines = @("# Written by the tray-agent installer; Group Policy (HKLM\Software\Policies\tray-agent) wins over it.",
           "version = 1")
$section = @("[connection]", "server = $(Quote $Server)", "dialect = $(Quote $Dialect)")
if ($Org) { $section += "org = $(Quote $Org)"; $keys += "connection.org" }
if ($Company) { $section += "company = $(Quote $Company)"; $keys += "connection.company" }
if ($Lock -eq "1") {
  $lines += "locked = [" + (($keys | ForEach-Object { Quote $_ }) -join ", ") + "]"
}
$lines += ""
$lines += $section

$dir = Split-Path -Parent $Path
New-Item -ItemType Directory -Force -Path $dir | Out-Null
$tmp = "$Path.tmp"
# UTF-8 without BOM (tomllib rejects nothing else, but a BOM confuses other readers).
[System.IO.File]::WriteAllText($tmp, ($lines -join "`r`n") + "`r`n", (New-Object System.Text.UTF8Encoding($false)))
Move-Item -Force -Path $tmp -Destination $Path
