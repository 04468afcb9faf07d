"""``no2fusion download s5p|era5``: fetch real Sentinel-5P L2 NO2 (CDSE) and ERA5 (CDS) files.

Sits at the left edge of the flow: it wires ``io.download`` to the command line. The files it
writes are what ``no2fusion build`` reads. Credentials come from the environment or the usual
dot-files (see ``io/download/credentials.py``), never from the command line, so they do not
end up in shell history or process lists.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from no2fusion.commands.base import Command, date_argument


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bbox",
        nargs=4,
        type=float,
        required=True,
        metavar=("W", "S", "E", "N"),
        help="domain in degrees: west south east north",
    )
    parser.add_argument("--start", type=date_argument, required=True, help="first day (YYYY-MM-DD)")
    parser.add_argument("--end", type=date_argument, required=True, help="last day, inclusive")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--dry-run", action="store_true", help="list what would be fetched and stop"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sources = parser.add_subparsers(dest="source", required=True, metavar="SOURCE")
    s5p = sources.add_parser(
        "s5p",
        help="Sentinel-5P TROPOMI L2 NO2 from the Copernicus Data Space Ecosystem",
        description="Search the CDSE OData catalogue and download Sentinel-5P L2 NO2 files. "
        "Credentials: CDSE_USERNAME/CDSE_PASSWORD (optional CDSE_TOTP) or ~/.netrc "
        "(machine identity.dataspace.copernicus.eu).",
    )
    _add_common(s5p)
    s5p.add_argument(
        "--stream",
        choices=("OFFL", "RPRO", "NRTI"),
        default="OFFL",
        help="processing stream (reprocessed RPRO up to 2022-07-25, offline OFFL after)",
    )
    era5 = sources.add_parser(
        "era5",
        help="ERA5 hourly single levels from the Climate Data Store (cdsapi)",
        description="Request ERA5 hourly single levels month by month through cdsapi. "
        "Credentials: ~/.cdsapirc (url: / key: lines) or CDSAPI_URL/CDSAPI_KEY.",
    )
    _add_common(era5)
    era5.add_argument(
        "--margin",
        type=float,
        default=1.0,
        help="degrees added around the bbox (the cube keeps meteorology beyond the domain)",
    )


def _bbox(values: list[float]):  # type: ignore[no-untyped-def]
    from no2fusion.grid import BBox

    west, south, east, north = values
    return BBox(lat_min=south, lat_max=north, lon_min=west, lon_max=east)


def _human(size: int | None) -> str:
    if size is None:
        return "size unknown"
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{size} B"
        value /= 1024
    return f"{size} B"


def _run_s5p(args: argparse.Namespace) -> int:
    from no2fusion.io.download import CDSEClient, cdse_credentials

    bbox = _bbox(args.bbox)
    credentials = None if args.dry_run else cdse_credentials()
    client = CDSEClient(credentials, progress=not args.quiet)
    products = client.search(bbox, args.start, args.end, args.stream)
    if args.dry_run:
        for product in products:
            print(f"{product.name}\t{_human(product.size)}")
        total = sum(p.size or 0 for p in products)
        print(f"{len(products)} products, {_human(total)} in total (dry run: nothing fetched)")
        return 0
    for product in products:
        present = (args.out / product.filename).exists()
        path = client.download(product, args.out)
        print(f"{'complete, skipped' if present else 'downloaded'}\t{path.name}")
    print(f"{len(products)} Sentinel-5P files in {args.out}")
    return 0


def _run_era5(args: argparse.Namespace) -> int:
    from no2fusion.io.download import download_era5

    bbox = _bbox(args.bbox)
    paths = download_era5(
        bbox, args.start, args.end, args.out, margin_deg=args.margin, dry_run=args.dry_run
    )
    if args.dry_run:
        from no2fusion.io.download.cds import era5_request, request_area, split_by_month

        area = request_area(bbox, args.margin)
        for month, path in zip(split_by_month(args.start, args.end), paths, strict=True):
            request = era5_request(month, area)
            print(
                f"{path.name}\t{len(request['day'])} days x 24 h, "
                f"{len(request['variable'])} variables, area N/W/S/E {area}"
            )
        print(f"{len(paths)} monthly requests (dry run: nothing requested)")
        return 0
    print(f"{len(paths)} ERA5 files in {args.out}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.source == "s5p":
        return _run_s5p(args)
    return _run_era5(args)


COMMAND = Command(
    name="download",
    help="download real Sentinel-5P (CDSE) or ERA5 (CDS) files",
    add_arguments=add_arguments,
    run=run,
)
