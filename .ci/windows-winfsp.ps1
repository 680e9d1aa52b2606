# Windows WinFsp smoke test of vmount (GitHub windows-latest job, WinFsp installed with
# choco): mounts memfs on X: and a loopback of a temp folder on Y:, runs file operations
# from PowerShell and .NET (create, read, copy, rename, case-insensitive lookup, a 64 MiB
# round trip with SHA-256, a 500-entry listing, delete refused while open without
# FILE_SHARE_DELETE, recursive delete), runs winfsp-tests-x64 --external on the memfs
# drive with the exclusions in .ci/winfsp-tests-exclusions.txt, and stops every daemon
# it started, also on failure.
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

$repo = Split-Path -Parent $PSScriptRoot
$bin = Join-Path $repo 'target\release\vmount.exe'
$work = Join-Path ([IO.Path]::GetTempPath()) "vmount-ci-$PID"
New-Item -ItemType Directory -Force $work | Out-Null
$daemons = @()

function Write-Config($name, $drive, $fsToml) {
    $path = Join-Path $work "$name.toml"
    @"
mountpoint = "$drive"
backend = "winfsp"
name = "$name"
$fsToml
"@ | Set-Content -Path $path -Encoding ascii
    return $path
}

function Start-Vmount($name, $config, $drive) {
    $out = Join-Path $work "$name.out"
    $err = Join-Path $work "$name.err"
    $p = Start-Process -FilePath $bin -ArgumentList @('-v', $config) -PassThru -NoNewWindow `
        -RedirectStandardOutput $out -RedirectStandardError $err
    $script:daemons += $p
    for ($i = 0; $i -lt 150; $i++) {
        if ((Test-Path $out) -and (Select-String -Path $out -Pattern '^mounted ' -Quiet)) { break }
        if ($p.HasExited) {
            Get-Content $out, $err -ErrorAction SilentlyContinue
            throw "vmount ($name) exited with code $($p.ExitCode) before mounting"
        }
        Start-Sleep -Milliseconds 200
    }
    $line = Get-Content $out | Select-Object -First 1
    if ($line -ne "mounted $name at $drive via winfsp") {
        Get-Content $out, $err -ErrorAction SilentlyContinue
        throw "unexpected first line from vmount ($name): '$line'"
    }
    if (-not (Test-Path "$drive\")) { throw "$drive is not there after vmount said it mounted" }
    return $p
}

function Assert($cond, $what) { if (-not $cond) { throw "check failed: $what" } }

function Test-FileOps($drive) {
    $d = "$drive\"
    Set-Content -Path "$d\hello.txt" -Value 'hello' -NoNewline
    Assert ((Get-Content "$d\hello.txt" -Raw) -eq 'hello') 'read back what was written'
    Assert (Test-Path "$d\HELLO.TXT") 'case-insensitive lookup'
    Assert ((Get-ChildItem $d -Filter 'hello.txt').Name -eq 'hello.txt') 'names keep their case'
    New-Item -ItemType Directory "$d\dir" | Out-Null
    Copy-Item "$d\hello.txt" "$d\dir\copy.txt"
    Rename-Item "$d\dir\copy.txt" 'renamed.txt'
    Assert (-not (Test-Path "$d\dir\copy.txt")) 'rename removed the old name'
    Assert ((Get-Content "$d\dir\renamed.txt" -Raw) -eq 'hello') 'renamed file content'

    $bytes = New-Object byte[] (64MB)
    (New-Object Random 42).NextBytes($bytes)
    [IO.File]::WriteAllBytes("$d\big.bin", $bytes)
    $sha = [Security.Cryptography.SHA256]::Create()
    $want = [BitConverter]::ToString($sha.ComputeHash($bytes)).Replace('-', '')
    Assert ((Get-FileHash -Algorithm SHA256 "$d\big.bin").Hash -eq $want) '64 MiB SHA-256 round trip'
    Assert ((Get-Item "$d\big.bin").Length -eq 64MB) 'file size'

    1..500 | ForEach-Object { New-Item -ItemType File "$d\dir\f$_" | Out-Null }
    Assert ((Get-ChildItem "$d\dir").Count -eq 501) '501 entries listed'

    # Windows semantics: a file open without FILE_SHARE_DELETE cannot be deleted.
    $fs = [IO.File]::Open("$d\hello.txt", 'Open', 'Read', 'Read')
    $deleted = $true
    try { [IO.File]::Delete("$d\hello.txt") } catch { $deleted = $false }
    $fs.Close()
    Assert (-not $deleted) 'delete refused while open without share-delete'
    Assert (Test-Path "$d\hello.txt") 'file still there after the refused delete'

    Remove-Item -Recurse "$d\dir"
    Remove-Item "$d\big.bin", "$d\hello.txt"
    Assert ((Get-ChildItem $d).Count -eq 0) 'empty after deleting everything'
}

try {
    if (-not (Test-Path $bin)) { throw "build vmount first: cargo build --release -p vmount" }
    & $bin backends

    $memfs = Write-Config 'memfs' 'X:' "[filesystem]`ntype = `"memfs`""
    $null = Start-Vmount 'memfs' $memfs 'X:'
    Test-FileOps 'X:'
    Write-Host 'memfs on X: file operations: ok'

    $src = Join-Path $work 'src'
    New-Item -ItemType Directory $src | Out-Null
    $srcToml = $src.Replace('\', '\\')
    $loop = Write-Config 'loopback' 'Y:' "[filesystem]`ntype = `"loopback`"`nsource = `"$srcToml`""
    $null = Start-Vmount 'loopback' $loop 'Y:'
    Set-Content -Path 'Y:\through-mount.txt' -Value 'abc' -NoNewline
    Assert ((Get-Content (Join-Path $src 'through-mount.txt') -Raw) -eq 'abc') 'loopback wrote to the source'
    Set-Content -Path (Join-Path $src 'on-host.txt') -Value 'xyz' -NoNewline
    Start-Sleep -Seconds 2
    Assert ((Get-Content 'Y:\on-host.txt' -Raw) -eq 'xyz') 'host change visible through the mount'
    Remove-Item 'Y:\through-mount.txt', 'Y:\on-host.txt'
    Test-FileOps 'Y:'
    Write-Host 'loopback on Y: file operations: ok'

    # winfsp-tests from the WinFsp release matching the newest one (choco installs that).
    $headers = @{}
    if ($env:GITHUB_TOKEN) { $headers['Authorization'] = "Bearer $env:GITHUB_TOKEN" }
    $rel = Invoke-RestMethod -Headers $headers 'https://api.github.com/repos/winfsp/winfsp/releases/latest'
    $asset = $rel.assets | Where-Object { $_.name -like 'winfsp-tests-*.zip' } | Select-Object -First 1
    if (-not $asset) { throw "no winfsp-tests zip in WinFsp release $($rel.tag_name)" }
    $zip = Join-Path $work 'winfsp-tests.zip'
    Invoke-WebRequest -Headers $headers -Uri $asset.browser_download_url -OutFile $zip
    Expand-Archive $zip -DestinationPath (Join-Path $work 'winfsp-tests')
    $exe = Get-ChildItem -Recurse (Join-Path $work 'winfsp-tests') -Filter 'winfsp-tests-x64.exe' |
        Select-Object -First 1
    $exclusions = Get-Content (Join-Path $PSScriptRoot 'winfsp-tests-exclusions.txt') |
        ForEach-Object { ($_ -replace '#.*$', '').Trim() } |
        Where-Object { $_ } | ForEach-Object { "-$_" }
    Push-Location 'X:\'
    try {
        & $exe.FullName --external --resilient --case-insensitive-cmp '+*' @exclusions
        if ($LASTEXITCODE -ne 0) { throw "winfsp-tests-x64 failed (exit $LASTEXITCODE)" }
    } finally { Pop-Location }
    Write-Host 'winfsp-tests-x64 --external on memfs: ok'
}
finally {
    foreach ($p in $daemons) {
        if (-not $p.HasExited) { Stop-Process -Id $p.Id -Force -ErrorAction SilentlyContinue }
    }
    # WinFsp removes a drive when its process ends; give it a moment, then make sure.
    Start-Sleep -Seconds 2
    foreach ($drive in 'X:', 'Y:') {
        if (Test-Path "$drive\") { Write-Warning "$drive is still mounted after its daemon ended" }
    }
    Remove-Item -Recurse -Force $work -ErrorAction SilentlyContinue
}
